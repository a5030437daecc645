"""Stand-in for the pip bootstrap script that ansible-test downloads from a host
these machines cannot reach. ansible-test runs it inside the fresh virtualenv it
creates for a sanity test, with pip-install style arguments; this installs the
pip bundled with Python (ensurepip) and then the requested packages from the
package index, which is reachable.
"""

import ensurepip
import os
import subprocess
import sys

# Options only the real get-pip script understands.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

# ensurepip points PIP_CONFIG_FILE at /dev/null in this process; the install
# below must see the machine's pip configuration (index, CA bundle) again.
environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=environment))
