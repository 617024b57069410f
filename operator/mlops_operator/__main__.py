"""`python -m mlops_operator` is the same as the `mlops-operator` command."""

import sys

from mlops_operator.cli import main

sys.exit(main())
