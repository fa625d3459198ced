// Verified deployments in, isolated workloads out. Lands with the provisioner issue.
enum ProvisionerModule {}
