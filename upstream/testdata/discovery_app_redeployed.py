"""discovery_app.py one release later (DISCOVERY_VARIANT=redeployed).

It takes the same flags as discovery_app.py.
"""

import os

os.environ["DISCOVERY_VARIANT"] = "redeployed"

import discovery_app  # noqa: E402

if __name__ == "__main__":
    discovery_app.main()
