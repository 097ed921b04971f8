"""``python -m qidicom`` runs the command line tool."""

from qidicom.cli import run

run()
