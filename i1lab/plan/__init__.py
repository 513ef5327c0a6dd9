"""Planning a study: expansion, content hashes, reuse, cost, and the weights a run needs."""
