"""Pure decisions of the farm (standard library only), tested without Redis or Celery."""
