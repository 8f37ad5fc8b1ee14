"""A fake Docker daemon that answers from captures: matching, scripts, bookkeeping, server."""
