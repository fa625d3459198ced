// Capacity measurement, allocation and signed reports. Lands with the capacity reporter issue.
enum CapacityReporterModule {}
