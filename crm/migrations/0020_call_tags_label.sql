-- The history's and the reports' tag filter lists every tag text ever set on a call: with this
-- index crm.directory.tag_labels reads one index entry per distinct text instead of every tag
CREATE INDEX call_tags_label ON call_tags (label)
