import sys

from xembed_conformance.cli import main

if __name__ == "__main__":
    sys.exit(main())
