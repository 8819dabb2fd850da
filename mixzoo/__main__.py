"""`python -m mixzoo` == the `mixzoo` console script."""
import sys

from mixzoo.cli import main

sys.exit(main())
