"""Prints the automatic score of every graded cell of every submission nbgrader's
autograde stored, as JSON: {student: {grade_id: auto_score or null}}.

Usage: nbgrader_scores.py COURSE_DIR ASSIGNMENT NOTEBOOK
"""
import json
import os
import sys

from nbgrader.api import Gradebook

course, assignment, notebook = sys.argv[1:4]
with Gradebook("sqlite:///" + os.path.join(course, "gradebook.db")) as gradebook:
    scores = {}
    for submission in gradebook.assignment_submissions(assignment):
        student = submission.student.id
        graded = gradebook.find_submission_notebook(notebook, assignment, student)
        scores[student] = {grade.name: grade.auto_score for grade in graded.grades}
print(json.dumps(scores))
