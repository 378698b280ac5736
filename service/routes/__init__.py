"""HTTP routes, one module per resource; each is a thin shell over ``service.queries``."""
