"""Who a request acts as (`Principal`), how an API key becomes one (`keys`), and what it may consume (`limits`)."""
