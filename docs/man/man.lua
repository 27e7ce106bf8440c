-- Pandoc filter for the man pages (docs/man/CMakeLists.txt).
--
-- Links: a link to another page of docs/ or to an anchor means nothing in
-- a man page, so only its text is kept; web links keep their address.
--
-- Tables: the reference tables of docs/configuration.md have up to five
-- columns of prose, wider than any terminal (tbl warns and man wraps them
-- into unreadable slivers).  Each row becomes an item of a definition list
-- instead, the way man pages list keys: the first cell is the term, the
-- middle cells one line "header: value; ...", the last cell the text.
-- Generic over the columns, so a key or a column added to the document
-- shows up without touching this filter.

function Link(link)
  if link.target:match("^https?://") then
    return nil
  end
  return link.content
end

-- The inlines of a cell (a list of blocks), blocks joined by a space.
local function cell_inlines(blocks)
  local out = pandoc.List()
  for i, block in ipairs(blocks) do
    if i > 1 then
      out:insert(pandoc.Space())
    end
    if block.content then
      out:extend(block.content)
    end
  end
  return out
end

function Table(tbl)
  local simple = pandoc.utils.to_simple_table(tbl)
  local headers = simple.headers
  local items = pandoc.List()
  for _, row in ipairs(simple.rows) do
    local term = cell_inlines(row[1])
    local definition = pandoc.List()
    local summary = pandoc.List()
    for col = 2, #row - 1 do
      local value = cell_inlines(row[col])
      if #value > 0 then
        if #summary > 0 then
          summary:extend({ pandoc.Str(";"), pandoc.Space() })
        end
        summary:insert(pandoc.Emph(cell_inlines(headers[col])))
        summary:extend({ pandoc.Str(":"), pandoc.Space() })
        summary:extend(value)
      end
    end
    if #summary > 0 then
      definition:insert(pandoc.Para(summary))
    end
    if #row > 1 then
      definition:insert(pandoc.Para(cell_inlines(row[#row])))
    end
    items:insert({ term, { definition } })
  end
  return pandoc.DefinitionList(items)
end
