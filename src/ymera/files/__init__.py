"""Files domain: uploads, downloads and the blob storage behind them."""
