return { profiles = { prod = { brokers = 1 }, other = {} } }
