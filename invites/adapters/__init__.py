"""The parts that talk to the outside: the SMTP pool and the local sink, IMAP, the embedded Redis, Redis
throttles, rate limits and locks, import progress, logging, and the producer that hands work to the workers
by task name."""
