"""NiFi evaluation: degraded -> restored metrics on pair folders, the paper's Table 1, dataset validation."""
