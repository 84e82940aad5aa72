"""The `cigocc` command line: main.py holds the command table, one module per command holds
its arguments and calls into the library. Only the table is imported here (argparse and
importlib), so `cigocc` and `python -m cigocc_ros.cli` stay cheap until a command is chosen."""
from .main import main

__all__ = ["main"]
