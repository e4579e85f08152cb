import sys

from modeling.train.cli import main

sys.exit(main())
