import sys

from psml.cli import main

sys.exit(main())
