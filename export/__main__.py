"""`python -m export --model M.keras --out DIR ...` is `resunet export ...`."""

import sys

from keras_resunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
