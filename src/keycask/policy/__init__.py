"""Authorization: a pure function from (principal, action, resource) to a Decision."""
