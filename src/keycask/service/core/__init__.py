"""What every request's operation does, whichever front door it came in by:
typed requests and results, key resolution, authorization, the handlers."""
