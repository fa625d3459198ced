// Namespaces, cgroups, capabilities, seccomp and images. Lands with the container runtime issue.
enum ContainerRuntimeModule {}
