import sys

from .main import main

if __name__ == "__main__":  # imported (e.g. to collect doctests), it starts nothing
    sys.exit(main())
