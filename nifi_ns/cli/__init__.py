"""NiFi console entry points (``ns-nifi-export``, ``nifi-convert-checkpoint``) and the option checks they share."""
