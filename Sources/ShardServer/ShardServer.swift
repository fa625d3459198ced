// The 0-db compatible shard store. Lands with the shard server issue.
enum ShardServerModule {}
