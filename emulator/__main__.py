import sys

from etcdlab.cli.main import main

sys.exit(main())
