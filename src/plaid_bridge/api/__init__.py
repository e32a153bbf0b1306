"""What every HTTP API body shares."""
