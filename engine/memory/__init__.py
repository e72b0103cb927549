"""In-memory doubles of the ports, for tests that run without RabbitMQ or PostgreSQL."""
