"""snapd: independent cross-region copies of the EBS snapshots Velero takes, and restores."""

__version__ = "0.1.0"
