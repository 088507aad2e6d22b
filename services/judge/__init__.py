"""The rubric judge: writes a rubric for a group of answers and rates each answer per criterion."""
