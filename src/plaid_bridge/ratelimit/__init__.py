"""Rate limits: generic sliding windows (memory or Redis) and the per-user API limits on them."""
