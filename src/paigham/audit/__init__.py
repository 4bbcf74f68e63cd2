"""The tamper-evident audit log: hash-chained records, export for a SIEM, verification, retention."""
