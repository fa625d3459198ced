print("tfchain-bench")
