"""The ``i1lab`` command, split by command family."""
