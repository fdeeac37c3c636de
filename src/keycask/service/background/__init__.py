"""Work no request asks for: lifecycle jobs, usage flushing, barrier rewrites."""
