"""Azure File Storage volumes (kind `azurefile`)."""
