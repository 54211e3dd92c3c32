"""GPUs: the catalog, `Cluster.parse("2x3090")`, and NVML detection."""
