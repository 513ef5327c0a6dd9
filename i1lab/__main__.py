"""``python -m i1lab`` is the ``i1lab`` command."""

from i1lab.cli.main import main

main()
