"""`python -m cigocc_ros.cli COMMAND ...` (what torchrun and the tests run): same as `cigocc`."""
import sys

from .main import main

sys.exit(main())
