"""Upload-event handlers: light on purpose (no torch, PIL, numpy or boto3)."""
