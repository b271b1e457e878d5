"""The AI pages: the queue, live status, model versions and the evidence shown on a case."""
