"""Who is calling: AWS Signature Version 4 verification and access-key lookup."""
