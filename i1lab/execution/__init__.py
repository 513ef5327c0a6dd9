"""Running a plan: the Ray driver, workers and gangs, leases, jobs, submit."""
