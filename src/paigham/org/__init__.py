"""The organisation: units (a tree), officials, import/export, spaces per unit, the directory."""
