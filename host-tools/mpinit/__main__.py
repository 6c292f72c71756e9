import sys

from mpinit.cli import main

sys.exit(main())
