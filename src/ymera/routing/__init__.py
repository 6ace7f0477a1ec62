"""Routing: strategies behind one interface, the shared eligibility filter,
policies, explanations, outlier ejection and the learning engine."""
