"""Tools for users and operators: send events, seed a demo, benchmark a deployment."""
