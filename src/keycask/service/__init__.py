"""What the KMS does: one handler per operation, run by the pipeline that
authenticates, audits and commits around it."""
