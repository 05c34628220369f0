"""What rank 0 records and shows: the mllog, curve and summary, live progress, the system description."""
