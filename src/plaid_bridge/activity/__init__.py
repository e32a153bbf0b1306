"""What happened: the audit log and the platform's events, each written in the transaction of the
change it records, and their read-only feeds."""
