// The chain interface and its backends. Lands with the chain issues.
enum ChainClientModule {}
